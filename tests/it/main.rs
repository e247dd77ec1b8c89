//! The integration suite, one test binary (one link of the crate), one module per concern.
//!
//! Real parts throughout: SQLite files and PostgreSQL schemas, HTTP over loopback, real
//! keys and cryptography, RabbitMQ; only Visa and the Click to Pay SaaS layer are
//! simulated. Shared harness in [`support`].
//!
//! | module | what it covers |
//! | --- | --- |
//! | [`api_auth`] | internal API tokens: RS256/ES256 from a JWKS file and a keys directory, issuer, audience, expiry |
//! | [`connections`] | connections that hold a listener slot for nothing; the connection bound |
//! | [`deploy_artifacts`] | `deploy/` stays true to the code (metric names, probes, configuration) |
//! | [`digests`] | no unkeyed digest of a request body anywhere in the database |
//! | [`enrollment_loop`] | internal API → SaaS → callback → statuses → outbox, with the SaaS failing on purpose |
//! | [`envelope_props`] | property tests of the Visa envelope decoder |
//! | [`fuzz_regressions`] | inputs the fuzz targets found failing, fed again to the code they broke |
//! | [`group_commit`] | batched notification writes: each gets its own outcome |
//! | [`idempotency`] | `Idempotency-Key`: replays, and one run under 16 concurrent requests |
//! | [`known_answers`] | fingerprints, sealing and keyed digests against values computed independently |
//! | [`metrics`] | the real binary's own metrics, exact values |
//! | [`outbox`] | the relay against SQLite and PostgreSQL with a stand-in broker |
//! | [`pan_leak`] | black-box audit of everything the real binary wrote, for card numbers |
//! | [`rabbitmq`] | the relay against a real RabbitMQ |
//! | [`refusals`] | error codes Y113, Y131, Y500, and that a refused request writes nothing |
//! | [`saas_callback`] | forged, unsigned, stale and malformed callbacks; card numbers in a callback |
//! | [`saas_client`] | our SaaS client against the simulator |
//! | [`signals`] | the real binary: SIGTERM with a request in flight, SIGHUP key reload |
//! | [`store`] | the store on both databases, and the CSV import |
//! | [`tenants`] | tenants own BIN ranges: the gate, the registry, Visa routing |
//! | [`visa_notification`] | Visa's notification end to end: every status, both key modes, rotation |
//! | [`widget`] | the secure card-details page over HTTP: issue, view, reveal once, 410s, date of birth, tenants, races |

mod support;

mod api_auth;
mod connections;
mod deploy_artifacts;
mod digests;
mod enrollment_loop;
mod envelope_props;
mod fuzz_regressions;
mod group_commit;
mod idempotency;
mod known_answers;
mod metrics;
mod outbox;
mod pan_leak;
mod rabbitmq;
mod refusals;
mod saas_callback;
mod saas_client;
mod signals;
mod store;
mod tenants;
mod visa_notification;
mod widget;
