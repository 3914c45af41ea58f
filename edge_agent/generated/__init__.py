"""Modules generated from protos/edge-agent.proto by scripts/generate-protos.sh; do not edit."""
