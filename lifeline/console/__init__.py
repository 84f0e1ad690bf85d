"""The operator console (issue 15): `lifeline console`, pages over the services' APIs."""
