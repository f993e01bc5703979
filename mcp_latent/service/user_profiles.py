"""Profiles agents make and remove over MCP (`define_profile`, `delete_profile`).

A definition is an ordinary profile file (same TOML format, same validation) written into the user profiles dir,
then a fresh `LiveProfile` is swapped in and fitted in the background: until its fit is ready a call naming it
waits (a small profile fits in seconds) and, until cross-validation supports answers, its verdicts abstain.
Taught exemplars live in the store per (profile, label), so a redefinition keeps those whose label still exists.

Who owns what: `ProfileEditor._lock` serialises definitions and deletions (file write, registry and `live`
swap). The service's `live` dict and the registry's profile dict are replaced whole under it (copy-on-write), so
every reader, on any thread, iterates a dict that never changes size under it."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mcp_latent.errors import InvalidInput, NotAllowed
from mcp_latent.profiles.spec import OFF_TOPIC_LABEL, ProfileSpec, off_topic_label, write_profile_file
from mcp_latent.service.live_profile import LiveProfile

if TYPE_CHECKING:
    from mcp_latent.service.api import LatentService

LABEL_KEYS = {"name", "description", "value", "examples"}
MAX_DESCRIPTION_CHARS = 2000  # a one-line description; longer is a mistake (the tool result echoes nothing of it)


def _where(loc: tuple) -> str:
    """A pydantic error location as the argument path an agent sent: labels[1].examples[0]."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(profile)"


class ProfileEditor:
    """Writes, replaces and deletes user profiles of one running service."""

    def __init__(self, service: LatentService):
        self.service = service
        self._lock = threading.Lock()

    def spec(self, name: Any, description: Any, labels: Any, off_topic: bool = True) -> ProfileSpec:
        """The checked profile, every problem named by its argument path (`labels[2].examples[0]: ...`)."""
        settings = self.service.settings
        if not isinstance(labels, list) or not all(isinstance(label, dict) for label in labels):
            raise InvalidInput(
                '`labels` must be a list of objects like {"name": "now", "description": "...", "examples": ["..."]} '
                '(optional "value": a number for ordinal labels).'
            )
        if len(labels) > settings.max_profile_labels:
            raise InvalidInput(
                f"{len(labels)} labels; at most {settings.max_profile_labels} (setting MCP_LATENT_MAX_PROFILE_LABELS)."
            )
        for i, label in enumerate(labels):
            unknown = sorted(set(label) - LABEL_KEYS)
            if unknown:
                raise InvalidInput(
                    f"labels[{i}] has unknown key(s) {', '.join(unknown)}; keys: {', '.join(LABEL_KEYS)}."
                )
        examples = sum(len(label.get("examples") or []) for label in labels)
        if examples > settings.max_profile_examples:
            raise InvalidInput(
                f"{examples} examples in one definition; at most {settings.max_profile_examples} (setting "
                "MCP_LATENT_MAX_PROFILE_EXAMPLES): define a few per label and `teach` the rest."
            )
        for i, label in enumerate(labels):
            for j, text in enumerate(label.get("examples") or []):
                if isinstance(text, str) and len(text) > settings.max_text_chars:
                    raise InvalidInput(
                        f"labels[{i}].examples[{j}] has {len(text):,} characters; the limit is "
                        f"{settings.max_text_chars:,} (setting MCP_LATENT_MAX_TEXT_CHARS)."
                    )
        if isinstance(description, str) and len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidInput(f"`description` has {len(description):,} characters; at most {MAX_DESCRIPTION_CHARS}.")
        if off_topic and any(label.get("name") == OFF_TOPIC_LABEL for label in labels):
            raise InvalidInput(
                f"label name {OFF_TOPIC_LABEL!r} is where the shared off-topic texts go; rename your label, or pass "
                "off_topic=false."
            )
        data = {"name": name, "description": description or "", "labels": list(labels), "abstain_until_supported": True}
        try:
            spec = ProfileSpec.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{_where(err['loc'])}: {err['msg']}" for err in exc.errors())
            raise InvalidInput(f"invalid profile definition: {problems}.") from exc
        if off_topic:
            spec = spec.model_copy(update={"labels": [*spec.labels, off_topic_label()]})
        return spec

    def define(self, name: Any, description: Any, labels: Any, off_topic: bool = True) -> dict[str, Any]:
        """Write (or replace) a user profile and start fitting it; returns what it holds and what it dropped."""
        service = self.service
        service.wait_ready()
        spec = self.spec(name, description, labels, off_topic)
        answer_labels = {label.name for label in spec.labels}
        with self._lock:
            current = service.registry.profiles.get(spec.name)
            if current is not None and current.builtin:
                raise NotAllowed(
                    f"profile {spec.name!r} is shipped with mcp-latent and cannot be redefined over MCP; pick another "
                    "name."
                )
            taught = service._store().taught(profile=spec.name)
            kept = [t for t in taught if t.label in answer_labels]
            dropped = Counter(t.label for t in taught if t.label not in answer_labels)
            service.registry.user_dir.mkdir(parents=True, exist_ok=True)
            path = service.registry.user_dir / f"{spec.name}.toml"
            write_profile_file(spec, path)
            profile = service.registry.put(spec, path, kept)
            settings = service.settings
            live = LiveProfile(
                profile,
                service.fitter,
                service._persister(spec.name),
                profile.taught_entries,
                settings.refit_cpu_share,
                settings.stream_calibration_window,
            )
            service.live = {**service.live, spec.name: live}
        # The fit runs off the caller's thread: a call naming the profile waits for it (seconds for a small one).
        threading.Thread(target=live.ensure_fitted, name=f"fit-{spec.name}", daemon=True).start()
        out: dict[str, Any] = {
            "profile": spec.name,
            "labels": [label.name for label in spec.labels],
            "exemplars": live.exemplars,
            "replaced": current is not None,
        }
        if kept:
            out["kept_taught"] = len(kept)
        if dropped:
            # Still in the store: defining the label again brings them back; `delete_profile` removes them.
            out["dropped_taught"] = dict(sorted(dropped.items()))
        return out

    def delete(self, name: Any) -> dict[str, Any]:
        """Remove a user profile: its file, its taught exemplars in the store, and its live fit."""
        service = self.service
        service.wait_ready()
        if not isinstance(name, str) or not name:
            raise InvalidInput("`name` must be the name of a profile you defined (see `profiles`).")
        with self._lock:
            profile = service.registry.get(name)  # NotFound names the profiles there are
            if profile.builtin:
                raise NotAllowed(f"profile {name!r} is shipped with mcp-latent and cannot be deleted over MCP.")
            profile.path.unlink(missing_ok=True)
            removed = service._store().drop_taught(name)
            service.registry.remove(name)
            service.live = {key: value for key, value in service.live.items() if key != name}
        return {"profile": name, "deleted": True, "taught_removed": removed}
