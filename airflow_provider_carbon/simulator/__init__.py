"""An offline carbon-intensity API (Electricity Maps v3 and Carbon Aware SDK formats) for demos and tests."""
