"""Tests of the file connector, including its run of the contract suite."""
