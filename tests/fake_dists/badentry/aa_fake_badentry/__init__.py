"""An entry point naming a class its module does not define (the mistake under test)."""
