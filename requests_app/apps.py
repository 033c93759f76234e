from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "DMS access requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.conf import settings

        from requests_app.encryption import check_keys
        from requests_app.workflow.leases import check_lease_timing

        # A malformed key stops every process at start, not at the first
        # account it reads.
        check_keys(settings.FIELD_ENCRYPTION_KEYS)
        check_lease_timing(settings)
