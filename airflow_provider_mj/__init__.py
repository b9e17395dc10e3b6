"""Apache Airflow provider for the Midjourney task API.

Import the pieces from their modules (``airflow_provider_mj.operators``,
``airflow_provider_mj.hooks``...); this package module stays light so DAG parsing is cheap.
"""

__version__ = "0.1.0"
