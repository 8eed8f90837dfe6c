//! The scenarios, written once over [`exoclaw_store::Store`], and the backends that run them.

/// Declares one `#[tokio::test]` per scenario, each run through `$harness`, an
/// `async fn(impl FnOnce(Store) -> impl Future<Output = ()>)` that opens a fresh store.
macro_rules! scenario_tests {
    ($harness:path) => {
        scenario_tests!(@each $harness;
            a_turn_round_trips_every_part_kind,
            turns_keep_their_order,
            a_failing_turn_leaves_nothing,
            unknown_sessions_are_reported,
            concurrent_commits_all_land,
            sessions_list_newest_first_and_are_found_by_key,
            clear_keeps_the_session_and_delete_keeps_the_usage,
            every_write_of_a_sessions_messages_moves_its_revision,
            usage_is_a_ledger_that_keeps_unreported_counts,
            usage_batches_land_whole,
            keys_are_stored_hashed_named_once_revoked_and_charged,
            a_saved_run_is_interrupted_until_its_turn_commits,
            interrupted_sessions_are_newest_first_and_go_with_discard_clear_and_delete,
            a_locked_session_refuses_a_second_lock_that_will_not_wait,
            a_waiting_lock_gets_the_session_when_the_holder_lets_go,
            the_audit_log_keeps_entries_whole_newest_first_and_filters_them,
            a_channels_latest_connection_state_replaces_older_ones,
        );
    };
    (@each $harness:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                $harness($crate::suite::scenarios::$scenario).await;
            }
        )+
    };
}

/// Declares one `#[tokio::test]` per long-term memory scenario (`suite/memory.rs`). `$harness` is
/// an `async fn(impl FnOnce(S) -> impl Future<Output = ()>)` that opens a fresh, empty store `S`
/// (any [`exoclaw_core::MemoryStore`]); `$pair_harness` an `async fn(impl FnOnce(S, S) -> …)`
/// that opens two handles on one fresh database, as two processes would.
macro_rules! memory_scenario_tests {
    ($harness:path, $pair_harness:path) => {
        memory_scenario_tests!(@each $harness;
            indexing_an_entry_twice_keeps_one,
            indexed_messages_count_from_the_highest_seq,
            text_search_finds_stemmed_words,
            text_search_gives_back_each_entry_exactly_as_indexed,
            text_search_ranks_the_better_match_first,
            text_search_is_owner_scoped,
            text_search_among_thousands_of_matches_keeps_the_best_and_the_owners,
            text_search_never_fails_on_hostile_queries,
            embedding_search_returns_the_nearest_first,
            embedding_search_skips_entries_without_embeddings_or_of_other_dimensions,
            embedding_search_follows_this_stores_writes,
            entries_indexed_without_embeddings_are_listed_then_embedded_under_new_ids,
            entries_whose_embedding_was_refused_are_no_longer_listed_but_found_by_text,
            forgetting_by_ids_is_owner_scoped,
            forgetting_a_session_is_owner_scoped,
            forgotten_messages_stay_counted_as_indexed,
            resetting_a_session_forgets_its_entries_summary_and_mark,
            resetting_a_session_keeps_the_facts_learned_from_it,
            forgetting_what_contains_a_text_ignores_case_and_is_owner_scoped,
            entries_are_listed_newest_first,
            summaries_only_move_forward,
            a_fact_with_the_same_object_is_known_and_keeps_the_higher_confidence,
            a_single_valued_fact_supersedes_the_current_one,
            multi_valued_facts_coexist,
            forgetting_a_fact_clears_what_pointed_at_it,
        );
        memory_scenario_tests!(@pairs $pair_harness;
            embedding_search_sees_another_handles_writes,
            embedding_search_sees_entries_another_handle_embedded_later,
        );
    };
    (@each $harness:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                $harness(|store| $crate::suite::memory::$scenario(std::sync::Arc::new(store))).await;
            }
        )+
    };
    (@pairs $harness:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                $harness(|store, other| {
                    $crate::suite::memory::$scenario(std::sync::Arc::new(store), std::sync::Arc::new(other))
                })
                .await;
            }
        )+
    };
}

mod arcadedb;
mod fixtures;
mod memory;
mod postgres;
mod scenarios;
mod sqlite;

/// Not a test: the process that the lock scenarios start and kill to show that a dead holder's
/// lock goes with it (see [`scenarios::a_killed_holder_releases_its_lock`]). Run on its own it
/// does nothing.
#[tokio::test]
#[ignore = "a helper process that the lock tests start themselves"]
async fn lock_holder_process() {
    scenarios::hold_a_lock_until_killed().await;
}
