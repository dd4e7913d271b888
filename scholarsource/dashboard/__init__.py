"""The web dashboard: HTML pages whose scripts read the same JSON API any client uses."""
