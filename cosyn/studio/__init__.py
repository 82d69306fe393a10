"""CoSyn Studio: the Gradio face of the pipeline (the UI holds no model logic; docs/architecture.md).

Importing the package switches Gradio's analytics and the hub's telemetry off. It happens here,
before any submodule imports gradio, because gradio reads these variables at import time.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
