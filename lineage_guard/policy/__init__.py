"""Step 4: the policy (YAML, validated) and the lookups the planner makes in it."""

from .loader import load_policy, parse_policy
from .model import IdentityDecl, KeysConfig, MaskDecl, Policy, Rule

__all__ = ["IdentityDecl", "KeysConfig", "MaskDecl", "Policy", "Rule", "load_policy", "parse_policy"]
