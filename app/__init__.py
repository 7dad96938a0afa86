"""The deployment service: a REST API over the job queue, the deployment records and the live status.

`app.main.create_app` builds the application, `app/api/v1.py` holds the endpoints, `app/core/` its
settings, authentication and metrics, and `app/run/` the executors that the workers' job processes
run (the only part that imports flytekit). `edge-deploy serve` and `edge-deploy worker` start them.
"""
