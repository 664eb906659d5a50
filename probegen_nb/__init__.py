"""probegen-nb: weight-space learning by probing."""
