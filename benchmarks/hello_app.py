"""The baseline for the HTTP benchmark: a bare Flask app answering "hello"."""

from flask import Flask

app = Flask(__name__)


@app.get("/hello")
def hello() -> dict[str, str]:
    return {"message": "hello"}
