"""The ground floor: devices, safe writes and resumable jobs, architectures, the zoo type and its folder format."""
