"""The deployment test's machinery, one module per role; run it with scripts/deploy_test.py."""
