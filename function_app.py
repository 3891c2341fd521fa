"""Marker for the Azure Functions Python worker, which checks that this file exists and then
imports `function_app`. That name resolves to the `function_app/` package (a package wins over a
same-named module), where the one `FunctionApp` is defined. Nothing else belongs here."""
