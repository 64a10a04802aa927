"""The causal records of a candidate: steering the base model along it and ablating it in the ft model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass
class Generation:
    """One answer generated under an edit (`strength` None: unsteered or ablated)."""

    prompt: str
    text: str
    strength: float | None = None

    def to_json(self) -> JSON:
        if self.strength is None:
            return {"prompt": self.prompt, "text": self.text}
        return {"strength": self.strength, "prompt": self.prompt, "text": self.text}

    @classmethod
    def from_json(cls, obj: JSON) -> Generation:
        s = obj.get("strength")
        return cls(str(obj.get("prompt", "")), str(obj.get("text", "")), None if s is None else float(s))


@dataclass
class SteeringRecord:
    """Trait expression of the base model steered along the latent's ft decoder direction, per strength."""

    trait: str
    model: str
    hook: str
    """Where the direction is added (the lens hook)."""
    score_hook: str
    """Where the answers' activations are projected on the persona vector."""
    strengths: list[float]
    """0 (unsteered) first, then the steering strengths."""
    trait_score: list[float]
    keyword_rate: list[float | None]
    generations: list[Generation] = field(default_factory=list)
    unsteered: list[Generation] = field(default_factory=list)

    def to_json(self) -> JSON:
        return {
            "trait": self.trait,
            "model": self.model,
            "hook": self.hook,
            "score_hook": self.score_hook,
            "strengths": list(self.strengths),
            "trait_score": list(self.trait_score),
            "keyword_rate": list(self.keyword_rate),
            "generations": [g.to_json() for g in self.generations],
            "unsteered": [g.to_json() for g in self.unsteered],
        }

    @classmethod
    def from_json(cls, obj: JSON) -> SteeringRecord:
        return cls(
            str(obj["trait"]), str(obj["model"]), str(obj["hook"]), str(obj["score_hook"]),
            [float(s) for s in obj["strengths"]], [float(s) for s in obj["trait_score"]],
            [None if r is None else float(r) for r in obj["keyword_rate"]],
            [Generation.from_json(g) for g in obj.get("generations") or []],
            [Generation.from_json(g) for g in obj.get("unsteered") or []],
        )  # fmt: skip

    def texts(self) -> tuple[list[str], list[str]]:
        """(steered answers, unsteered answers): what the lexical generation signal compares."""
        return [g.text for g in self.generations], [g.text for g in self.unsteered]


@dataclass
class AblationRecord:
    """Trait expression of the ft model before and after the latent is ablated."""

    trait: str
    model: str
    score_before: float
    score_after: float
    drop: float
    keyword_rate_before: float | None
    keyword_rate_after: float | None
    generations: list[Generation] = field(default_factory=list)

    def to_json(self) -> JSON:
        return {
            "trait": self.trait,
            "model": self.model,
            "score_before": self.score_before,
            "score_after": self.score_after,
            "drop": self.drop,
            "keyword_rate_before": self.keyword_rate_before,
            "keyword_rate_after": self.keyword_rate_after,
            "generations": [g.to_json() for g in self.generations],
        }

    @classmethod
    def from_json(cls, obj: JSON) -> AblationRecord:
        def rate(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            str(obj["trait"]), str(obj["model"]), float(obj["score_before"]), float(obj["score_after"]),
            float(obj["drop"]), rate(obj.get("keyword_rate_before")), rate(obj.get("keyword_rate_after")),
            [Generation.from_json(g) for g in obj.get("generations") or []],
        )  # fmt: skip
