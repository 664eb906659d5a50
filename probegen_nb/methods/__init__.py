"""Weight-space learning methods on a zoo: probing (probes → responses → predictor)."""
