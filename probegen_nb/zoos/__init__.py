"""Where zoos come from: image data sets, the INR and CNN zoo builders, the public zoos' converters."""
