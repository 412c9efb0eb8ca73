package ratelimit.store;

import com.hazelcast.core.HazelcastException;

/**
 * The database already holds another client of this name in this map: the write fails
 * and changes nothing. API replicas recognise it by this class name (registry/store.py)
 * and answer 409, as for a name taken in memory.
 */
public class NameTakenException extends HazelcastException {

    private static final long serialVersionUID = 1L;

    public NameTakenException(String message) {
        super(message);
    }
}
