"""A Django-signals app (settings configured in code, no database), wrapped by ``django_bus`` unchanged."""
