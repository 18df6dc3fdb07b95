-- Every instance listens on `banter_user_removed` and disconnects the removed user's sockets:
-- a session must not outlive its account, whoever removes the row.
CREATE FUNCTION banter_user_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('banter_user_removed', OLD.id::text);
    RETURN OLD;
END
$$;
CREATE TRIGGER users_removed AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION banter_user_removed();
