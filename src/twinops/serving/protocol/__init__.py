"""Protocol code (OpenAI routes, V2 tensors, errors), kept apart from the models."""
