"""The probe explorer (notebook 04): its computations, its plotly views, and the widget wiring."""
