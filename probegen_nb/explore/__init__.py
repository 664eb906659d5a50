"""The probe explorer (notebook 04): its computations, its plotly views, and the widget wiring; and `sections`, how
an ablation section (notebook 05) is shown: figure, table and claims."""
