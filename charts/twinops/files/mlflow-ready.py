import base64, os, urllib.request
account = f"{os.environ['MLFLOW_AUTH_ADMIN_USERNAME']}:{os.environ['MLFLOW_AUTH_ADMIN_PASSWORD']}"
request = urllib.request.Request(
    "http://127.0.0.1:5000/api/2.0/mlflow/registered-models/search?max_results=1",
    headers={"Host": "mlflow:5000", "Authorization": "Basic " + base64.b64encode(account.encode()).decode()},
)
urllib.request.urlopen(request, timeout=8)
