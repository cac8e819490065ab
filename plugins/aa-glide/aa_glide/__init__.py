"""The ``glide`` generator: OpenAI's GLIDE with classifier-free guidance and its upsampler."""
