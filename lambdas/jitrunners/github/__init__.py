"""GitHub adapters: authentication and the REST calls jitrunners makes."""
