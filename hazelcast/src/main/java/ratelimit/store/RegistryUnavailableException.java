package ratelimit.store;

import com.hazelcast.core.HazelcastException;

/**
 * The registry database could not take a write (or give the initial load): the map
 * operation that caused it fails and changes nothing in memory. API replicas recognise
 * it by this class name (registry/store.py) and answer 503.
 */
public class RegistryUnavailableException extends HazelcastException {

    private static final long serialVersionUID = 1L;

    public RegistryUnavailableException(String message, Throwable cause) {
        super(message, cause);
    }
}
