"""Test support: real peers (MLServer) started as subprocesses, free ports."""
