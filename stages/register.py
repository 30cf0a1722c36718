"""DVC stage `register` (params: register): MLflow model version + challenger/champion alias gate."""

from wildtrain.pipeline.entry import run
from wildtrain.pipeline.register import register

if __name__ == "__main__":
    run(register)
