"""CVAT for images 1.1 XML, `cvat/annotations.xml` (CVAT: Upload annotations, "CVAT 1.1").
Each part of an instance is a `<polygon>`; the parts of one instance share a `group_id`; the
score is the polygon's `score` attribute, declared on every label as a number."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from .traced import TracedImage, flat

FOLDER = "cvat"


def files(images: list[TracedImage], class_names: list[str], root=None) -> dict[str, bytes]:
    """The predictions as CVAT for images 1.1, {"cvat/annotations.xml": bytes}: labels are
    `class_names` (without the background), then any other predicted name; a polygon per part,
    the parts of one instance sharing a group_id, the score as an attribute. Image names are
    relative to `root`/cvat when `root` is given."""
    folder = root and root / FOLDER
    tree = ElementTree.Element("annotations")
    ElementTree.SubElement(tree, "version").text = "1.1"
    _meta(tree, _labels(images, class_names))
    group = 0
    for index, image in enumerate(images):
        element = ElementTree.SubElement(tree, "image", id=str(index), name=image.name_from(folder),
                                         width=str(image.width), height=str(image.height))
        for label, score, parts in image.instances():
            group += 1
            for part in parts:
                xy = flat(part)
                points = ";".join(f"{x:g},{y:g}" for x, y in zip(xy[0::2], xy[1::2]))
                polygon = ElementTree.SubElement(element, "polygon", label=label, source="auto",
                                                 occluded="0", points=points, z_order="0",
                                                 group_id=str(group))
                ElementTree.SubElement(polygon, "attribute", name="score").text = f"{score:.4f}"
    ElementTree.indent(tree)
    return {f"{FOLDER}/annotations.xml": ElementTree.tostring(tree, encoding="utf-8", xml_declaration=True)}


def _labels(images: list[TracedImage], class_names: list[str]) -> list[str]:
    """The model's classes (background excluded by the caller), then any other predicted name."""
    used = {label for image in images for label in image.labels}
    return list(class_names) + sorted(used - set(class_names))


def _meta(tree, labels: list[str]) -> None:
    task = ElementTree.SubElement(ElementTree.SubElement(tree, "meta"), "task")
    declared = ElementTree.SubElement(task, "labels")
    for name in labels:
        label = ElementTree.SubElement(declared, "label")
        ElementTree.SubElement(label, "name").text = name
        ElementTree.SubElement(label, "type").text = "polygon"
        attribute = ElementTree.SubElement(ElementTree.SubElement(label, "attributes"), "attribute")
        for key, value in (("name", "score"), ("mutable", "True"), ("input_type", "number"),
                           ("default_value", "0"), ("values", "0\n1\n0.0001")):
            ElementTree.SubElement(attribute, key).text = value
