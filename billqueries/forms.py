from __future__ import annotations

from typing import Any

from django import forms
from django.core import signing
from django.utils.translation import gettext_lazy as _

from .models import BillQueryBatch

SIGNING_SALT = "billqueries.batch-confirm"
CONFIRM_MAX_AGE = 6 * 3600


class BatchInputForm(forms.Form):
    text = forms.CharField(
        label=_("Lines"),
        required=False,
        widget=forms.Textarea(
            attrs={
                "rows": 12,
                "cols": 80,
                "spellcheck": "false",
                "placeholder": "İSKİ;01345677000\n30;2125550101;7712345\nİGDAŞ 123456789",
            }
        ),
        help_text=_(
            "One query per line: the institution (code or name), the subscriber number and, "
            "where the institution needs it, the additional number; separated by ; , a tab "
            "or spaces."
        ),
    )
    upload = forms.FileField(
        label=_("Or a file"),
        required=False,
        help_text=_(
            "CSV (UTF-8, ; or , separated) or Excel .xlsx with the same three columns; "
            "a header row is allowed."
        ),
    )
    # "pasted" when the browser saw a paste into the text box (set by the page's script).
    text_source = forms.ChoiceField(
        choices=[(BillQueryBatch.Source.TYPED,) * 2, (BillQueryBatch.Source.PASTED,) * 2],
        initial=BillQueryBatch.Source.TYPED,
        required=False,
        widget=forms.HiddenInput,
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not (data.get("text") or "").strip() and not data.get("upload"):
            raise forms.ValidationError(_("Type or paste some lines, or choose a file."))
        if (data.get("text") or "").strip() and data.get("upload"):
            raise forms.ValidationError(_("Give either lines or a file, not both."))
        return data


class BatchConfirmForm(forms.Form):
    """Carries the previewed lines to the confirming POST, signed so they arrive unchanged."""

    lines = forms.CharField(widget=forms.HiddenInput)

    @staticmethod
    def sign(lines: list[dict[str, Any]], source: str, filename: str) -> str:
        compact = [
            [ln["number"], ln["soot_code"], ln["subscriber_no"], ln["additional_no"]]
            for ln in lines
        ]
        data = {"lines": compact, "source": source, "filename": filename}
        return signing.dumps(data, salt=SIGNING_SALT, compress=True)

    def clean_lines(self) -> dict[str, Any]:
        try:
            data = signing.loads(
                self.cleaned_data["lines"], salt=SIGNING_SALT, max_age=CONFIRM_MAX_AGE
            )
        except signing.BadSignature as error:
            raise forms.ValidationError(
                _("The preview has expired or was changed; start again.")
            ) from error
        data["lines"] = [
            {"number": n, "soot_code": soot, "subscriber_no": sub, "additional_no": add}
            for n, soot, sub, add in data["lines"]
        ]
        return data
