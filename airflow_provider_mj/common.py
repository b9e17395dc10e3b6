"""Names the hook, the operators, the sensor and the trigger share: the connection and the XCom keys.

Plain constants, no imports: every module of the package may import this one.
"""

#: The Airflow connection type of the Midjourney API.
CONN_TYPE = "midjourney"
#: The connection every hook, operator, sensor and trigger uses unless told otherwise.
DEFAULT_CONN_ID = "midjourney_default"

#: XCom keys. ``mj_task_id``: the Midjourney task id, pushed as soon as a job is accepted.
MJ_TASK_ID_XCOM_KEY = "mj_task_id"
#: ``custom_ids``: button label -> customId of the finished task (``{"U1": "MJ::JOB::..."}``).
CUSTOM_IDS_XCOM_KEY = "custom_ids"
#: ``mj_image_url``: the task's image URL (a preview while running, the final image after).
IMAGE_URL_XCOM_KEY = "mj_image_url"
#: ``mj_saved_uri``: where a task saved its image (``destination``), also ``saved_uri`` in its return value.
SAVED_URI_XCOM_KEY = "mj_saved_uri"
