"""The operators' console (docs/CONSOLE.md): the board every worker folds from
`ioc.alerts` and `ioc.alert-actions`, its HTTP API and live stream, the page, logins."""
