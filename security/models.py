from django.db import models
from django.utils.translation import gettext_lazy as _


class PersonalData(models.Model):
    """No table: the holder of the permission to see customers' personal data unmasked
    (`security.view_personal_data`, security/personal.py)."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = _("personal data")
        verbose_name_plural = _("personal data")
        permissions = [
            (
                "view_personal_data",
                _("Can see customers' names, e-mails and phone numbers unmasked"),
            ),
        ]

    def __str__(self) -> str:
        return str(self._meta.verbose_name)


class RetentionMark(models.Model):
    """How far the personal data retention sweep has got: rows made before `done_until` have
    been masked (security/retention.py), so each sweep reads only what aged since."""

    name = models.CharField(_("name"), max_length=64, primary_key=True)
    done_until = models.DateTimeField(_("done until"), null=True, blank=True)

    class Meta:
        verbose_name = _("retention mark")
        verbose_name_plural = _("retention marks")

    def __str__(self) -> str:
        return self.name
