-- Instructions between instances travel on one notification channel, `banter_instructions`,
-- as JSON (`src/realtime/instructions.rs`). A removed account and a ban are announced by their
-- row's change, so the instruction leaves exactly when the change commits: one function for
-- both triggers now.
CREATE FUNCTION banter_user_gone() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gone uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
BEGIN
    PERFORM pg_notify('banter_instructions',
                      json_build_object('op', 'disconnect_user', 'user', gone)::text);
    RETURN NULL;
END
$$;

DROP TRIGGER users_removed ON users;
CREATE TRIGGER users_removed AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION banter_user_gone();
DROP TRIGGER users_banned ON users;
CREATE TRIGGER users_banned AFTER UPDATE OF banned_at ON users
    FOR EACH ROW WHEN (OLD.banned_at IS NULL AND NEW.banned_at IS NOT NULL)
    EXECUTE FUNCTION banter_user_gone();
DROP FUNCTION banter_user_removed();
DROP FUNCTION banter_user_banned();
