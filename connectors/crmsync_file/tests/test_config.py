"""The file connector's config: defaults, inference, validation, and the plugin entry point."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from crmsync.domain.values import TaxStatus
from crmsync.sdk.connector import ConnectorContext, ConnectorPlugin
from crmsync_file import FileConnector, FileConnectorConfig, plugin
from crmsync_file.config import CompanyColumns, CompanyFileSource, ContactColumns


def _config(**overrides: Any) -> FileConnectorConfig:
    return FileConnectorConfig.model_validate(
        {"type": "file", "companies": {"path": "companies.csv"}, **overrides}
    )


def test_a_minimal_section_gets_the_documented_defaults() -> None:
    config = _config(contacts={"path": "contacts.jsonl"})
    assert config.companies.file_format == "csv"
    assert config.companies.encoding == "utf-8-sig"
    assert config.companies.delimiter == ","
    assert config.companies.list_separator == ";"
    assert config.companies.columns == CompanyColumns()
    assert config.companies.columns.modified_at == "updated_at"
    assert config.companies.columns.line1 == "address_line1"
    assert config.contacts is not None
    assert config.contacts.file_format == "jsonl"
    assert config.contacts.columns.company_ids == "company_id"
    assert config.contacts.columns.first_name == "first_name"


def test_contacts_are_optional() -> None:
    assert _config().contacts is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a.csv", "csv"), ("a.CSV", "csv"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl")],
)
def test_the_format_is_inferred_from_the_suffix(path: str, expected: str) -> None:
    assert CompanyFileSource(path=Path(path)).file_format == expected


def test_an_explicit_format_overrides_the_suffix() -> None:
    assert CompanyFileSource(path=Path("export.txt"), format="jsonl").file_format == "jsonl"


def test_an_unknown_suffix_without_a_format_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot infer the format"):
        CompanyFileSource(path=Path("export.txt"))


@pytest.mark.parametrize(
    "section",
    [
        {"type": "file", "companies": {"path": "a.csv"}, "surplus": 1},
        {"type": "file", "companies": {"path": "a.csv", "delimeter": ";"}},
        {"type": "file", "companies": {"path": "a.csv", "columns": {"nmae": "Name"}}},
        {"type": "file", "companies": {"path": "a.csv"}, "contacts": {"path": "b.csv", "x": 1}},
    ],
)
def test_unknown_keys_are_refused_at_every_level(section: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        FileConnectorConfig.model_validate(section)


def test_another_connector_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        FileConnectorConfig.model_validate({"type": "hubspot", "companies": {"path": "a.csv"}})


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown encoding"):
        CompanyFileSource(path=Path("a.csv"), encoding="klingon-8")


def test_a_delimiter_must_be_one_character() -> None:
    with pytest.raises(ValidationError):
        CompanyFileSource(path=Path("a.csv"), delimiter=";;")


def test_a_value_both_true_and_false_is_refused() -> None:
    with pytest.raises(ValidationError, match="both true and false"):
        CompanyFileSource(
            path=Path("a.csv"), true_values=frozenset({"Y", "ja"}), false_values=frozenset({"y"})
        )


def test_tax_status_values_are_validated_and_compared_without_case() -> None:
    source = CompanyFileSource.model_validate(
        {"path": "a.csv", "tax_status_values": {" Exempt ": "TAX_EXEMPT"}}
    )
    assert source.tax_status_values == {"exempt": TaxStatus.TAX_EXEMPT}
    with pytest.raises(ValidationError):
        CompanyFileSource.model_validate({"path": "a.csv", "tax_status_values": {"x": "FREE"}})


def test_a_column_can_be_declared_absent_with_null() -> None:
    source = CompanyFileSource.model_validate({"path": "a.csv", "columns": {"modified_at": None}})
    assert source.columns.modified_at is None
    assert source.columns.name == "name"


def test_relative_paths_resolve_against_the_base_dir_and_absolute_ones_stay(tmp_path: Path) -> None:
    assert CompanyFileSource(path=Path("x/a.csv")).resolve(tmp_path) == tmp_path / "x/a.csv"
    assert (
        CompanyFileSource(path=tmp_path / "a.csv").resolve(Path("/elsewhere")) == tmp_path / "a.csv"
    )


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for info in model.model_fields.values():
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in found:
                found += _models(arg)
    return found


def test_every_config_key_has_a_description_and_refuses_extra_keys() -> None:
    models: set[type[BaseModel]] = {*_models(FileConnectorConfig), ContactColumns}
    assert {m.__name__ for m in models} >= {
        "FileConnectorConfig",
        "CompanyFileSource",
        "ContactFileSource",
        "CompanyColumns",
        "ContactColumns",
    }
    for model in models:
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"


def test_the_plugin_is_registered_under_the_connectors_entry_point_group() -> None:
    (entry,) = [e for e in entry_points(group="crmsync.connectors") if e.name == "file"]
    loaded = entry.load()
    assert loaded is plugin
    assert isinstance(loaded, ConnectorPlugin)
    assert plugin.type == "file"
    assert plugin.config_model is FileConnectorConfig


def test_the_plugin_factory_builds_a_file_connector(tmp_path: Path) -> None:
    connector = plugin.factory(_config(), ConnectorContext(name="export", base_dir=tmp_path))
    assert isinstance(connector, FileConnector)
