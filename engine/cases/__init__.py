"""Cases: complaints, escalations and requests followed until they are closed."""
