-- Devices (spec 16.3): each login may register one device, certified by the user's identity
-- key. Logging out (or revoking the login) removes the device with it.
CREATE TABLE devices (
    user_id     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id   TEXT NOT NULL,
    session_id  TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    certificate TEXT NOT NULL,
    updated_ts  INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX devices_session ON devices (session_id);
