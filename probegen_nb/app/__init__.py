"""Applications on top of the library: the papermill runner behind `make demo` and `make seeds`."""
