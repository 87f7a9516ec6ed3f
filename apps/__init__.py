"""The app's tabs: one module per tab, each with ``build(engine) -> gr.Blocks``. Only this package imports gradio."""
