-- Instructions between instances travel on one notification channel, `banter_instructions`,
-- as JSON (`src/realtime/instructions.rs`). A removed account and a ban are announced by their
-- row's change, so the instruction leaves exactly when the change commits.
CREATE OR REPLACE FUNCTION banter_user_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('banter_instructions',
                      json_build_object('op', 'disconnect_user', 'user', OLD.id)::text);
    RETURN OLD;
END
$$;

CREATE OR REPLACE FUNCTION banter_user_banned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('banter_instructions',
                      json_build_object('op', 'disconnect_user', 'user', NEW.id)::text);
    RETURN NEW;
END
$$;
