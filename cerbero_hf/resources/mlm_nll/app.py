"""The Hub Space front end of the mlm_nll metric: the standard evaluate widget."""

from pathlib import Path

import evaluate

# load by script path: on a Space the folder is not named after the module
module = evaluate.load(str(Path(__file__).resolve().parent / "mlm_nll.py"))

if __name__ == "__main__":
    try:  # needs gradio, installed on a Space (sdk: gradio), not required locally
        from evaluate.utils import launch_gradio_widget
    except ImportError as err:
        raise SystemExit(f"launching the widget needs gradio: {err}")
    launch_gradio_widget(module)
