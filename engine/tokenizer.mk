# engine/: tokenizer and chat templates (sources join libengine.a).
