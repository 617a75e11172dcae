"""Events, enums, envelope, configuration and Arrow schemas of Alpha Panda."""
