"""Start the vaedemo web app: `python app.py` (also what `make run` and a Hugging Face Space run).

Listens on $GRADIO_SERVER_NAME (default 127.0.0.1) and $PORT or $GRADIO_SERVER_PORT (default 7860).
"""

from vaedemo.ui import serve

if __name__ == "__main__":
    serve()
