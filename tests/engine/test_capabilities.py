"""Backend capabilities: what code outside the engine asks for instead of a model family."""

from __future__ import annotations

from napari_segany.engine.amg import has_model_generator
from napari_segany.engine.base import CAPABILITIES, has_capability
from napari_segany.engine.sam2_video import supports_memory
from rule_backend import RuleBackend


def test_sam_and_sam2_declare_their_capabilities(sam, sam2):
    assert has_capability(sam, "automatic") and not has_capability(sam, "memory")
    assert has_capability(sam2, "automatic") and has_capability(sam2, "memory")
    assert has_model_generator(sam) and has_model_generator(sam2)
    assert supports_memory(sam2) and not supports_memory(sam)
    assert set(sam2.capabilities) <= set(CAPABILITIES)


def test_a_backend_without_the_attribute_has_none():
    rule = RuleBackend()
    assert not hasattr(rule, "capabilities")
    assert not has_capability(rule, "automatic") and not has_model_generator(rule)
    assert not supports_memory(rule)
