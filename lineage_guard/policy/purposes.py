"""What a purpose may require of every read made for it: no sensitive value clear, a re-identification floor.

A purpose such as `ai_training` can say (YAML):

    quasi_identifiers: [postal_code, date_of_birth, sex]
    purpose_requirements:
      ai_training:
        no_sensitive_clear: true
        k_anonymity: 5
        l_diversity: {attribute: diagnosis, l: 2}

`no_sensitive_clear` is judged at plan time (a classified column that is not a quasi-identifier
coming back clear denies the read, approval or not). The floor is measured on the masked output
before the sink is committed (`lineage_guard.attest.floor`): the rows sharing one combination of
the quasi-identifier columns left in the output form a class; every class must hold at least
`k_anonymity` rows (or people, with `subject`), and, with `l_diversity`, at least `l` distinct
values of the sensitive attribute. Below it the read fails, nothing is written, and the ledger
records the class sizes (never a value).

Example:
    >>> r = PurposeRequirement.model_validate({"k_anonymity": 5, "l_diversity": {"attribute": "diagnosis", "l": 2}})
    >>> (r.k_anonymity, r.l_diversity.l, r.has_floor)
    (5, 2, True)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiversityFloor(_Strict):
    """l-diversity: within every class, at least `l` distinct values of the attribute with this classification."""

    attribute: str = Field(description="the classification label of the sensitive attribute (e.g. diagnosis)")
    l: int = Field(ge=2, description="the fewest distinct values of the attribute any class may hold")


class PurposeRequirement(_Strict):
    """Conditions every read for one purpose must meet; `purpose_requirements: {ai_training: {...}}`."""

    no_sensitive_clear: bool = Field(
        False, description="deny a read returning any classified column clear, unless its label is a "
                           "quasi-identifier (those are held to `k_anonymity` instead); an approval cannot lift it")
    k_anonymity: int | None = Field(
        None, ge=2, description="the smallest class any combination of the quasi-identifiers left in the output may "
                                "form (rows, or people with `subject`), measured before the sink is committed")
    l_diversity: DiversityFloor | None = Field(
        None, description="the fewest distinct values of a sensitive attribute within every class")
    subject: str | None = Field(
        None, description="a classification label whose output column identifies a person (e.g. "
                          "medical_record_number, tokenized): classes then count distinct people, not rows; "
                          "a read without that column is refused")

    @model_validator(mode="after")
    def _subject_needs_k(self) -> PurposeRequirement:
        if self.subject is not None and self.k_anonymity is None:
            raise ValueError("`subject` says how k_anonymity counts a class; set `k_anonymity: K` too")
        return self

    @property
    def has_floor(self) -> bool:
        """True when reads for this purpose must be measured before they are released."""
        return self.k_anonymity is not None or self.l_diversity is not None
