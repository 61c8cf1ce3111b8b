"""Small reusable widgets of the wizard: the step list, code view, model-checked fields."""
