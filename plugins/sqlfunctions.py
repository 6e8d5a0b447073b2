"""The functions a read-only query may call, and why some well-known others may not.

``ALLOWED_FUNCTIONS`` decides: a function that is not on it is refused. It
holds what the built-in runbooks call, the usual functions of diagnosis queries
(aggregates, window functions, dates, strings, JSON, sizes, catalog and
replication information) and nothing that changes state, reads the server's
files, waits, or runs SQL text it is given (``query_to_xml``, ``dblink``,
``ts_stat``). The reasons below only make refusals easier to read.
"""

from __future__ import annotations

ALLOWED_FUNCTIONS = frozenset(
    """
    count sum avg min max bool_and bool_or every string_agg array_agg json_agg jsonb_agg
    json_object_agg jsonb_object_agg percentile_cont percentile_disc mode stddev
    stddev_pop stddev_samp variance var_pop var_samp bit_and bit_or corr covar_pop
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value
    last_value nth_value
    coalesce nullif greatest least
    now clock_timestamp statement_timestamp transaction_timestamp timeofday age
    date_trunc date_part date_bin extract make_interval make_timestamp make_timestamptz
    make_date make_time justify_interval justify_hours justify_days to_timestamp
    to_char to_date to_number isfinite timezone
    abs ceil ceiling floor round trunc sign sqrt power exp ln log log10 mod div
    width_bucket
    length char_length character_length octet_length bit_length lower upper initcap
    left right substr substring position strpos replace translate split_part trim btrim
    ltrim rtrim lpad rpad concat concat_ws format repeat reverse starts_with
    regexp_replace regexp_match regexp_matches regexp_split_to_array
    regexp_split_to_table regexp_like regexp_count md5 quote_ident quote_literal
    quote_nullable to_hex encode decode string_to_array array_to_string overlay ascii chr
    array_length array_lower array_upper array_dims cardinality unnest array_position
    array_positions array_remove array_append array_prepend array_cat generate_series
    generate_subscripts
    to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object
    json_build_array jsonb_build_array json_extract_path_text jsonb_extract_path_text
    jsonb_pretty json_typeof jsonb_typeof json_array_length jsonb_array_length json_each
    jsonb_each json_each_text jsonb_each_text json_array_elements jsonb_array_elements
    json_object_keys jsonb_object_keys
    host hostmask masklen netmask network family abbrev
    text int2 int4 int8 float4 float8 bool date
    version current_database current_schema current_schemas current_setting
    inet_server_addr inet_server_port inet_client_addr inet_client_port pg_backend_pid
    pg_postmaster_start_time pg_conf_load_time pg_is_in_recovery pg_is_wal_replay_paused
    pg_last_xact_replay_timestamp pg_last_wal_receive_lsn pg_last_wal_replay_lsn
    pg_current_wal_lsn pg_current_wal_insert_lsn pg_current_wal_flush_lsn pg_wal_lsn_diff
    pg_walfile_name pg_blocking_pids pg_safe_snapshot_blocking_pids pg_control_checkpoint
    pg_control_system pg_listening_channels pg_notification_queue_usage
    pg_typeof format_type pg_get_userbyid pg_get_indexdef pg_get_constraintdef
    pg_get_viewdef pg_get_expr pg_get_triggerdef pg_get_functiondef obj_description
    col_description shobj_description pg_encoding_to_char pg_tablespace_location
    to_regclass to_regtype to_regproc to_regnamespace to_regrole pg_table_is_visible
    has_table_privilege has_database_privilege has_schema_privilege has_column_privilege
    has_function_privilege pg_has_role
    pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size
    pg_database_size pg_tablespace_size pg_column_size pg_size_pretty pg_size_bytes
    mxid_age
    """.split()
)

_SQL_TEXT = "runs the SQL text it is given"
_LOCK = "takes an advisory lock (a session lock outlives the transaction)"
#: Why some well-known functions are not allowed.
FUNCTION_REASONS = {
    "pg_cancel_backend": "cancels another session's query",
    "pg_terminate_backend": "terminates another session",
    "set_config": "changes a setting",
    "setseed": "changes the session's random seed",
    "nextval": "advances a sequence",
    "setval": "sets a sequence",
    "currval": "reads the session's sequence state (nextval and setval change it)",
    "lastval": "reads the session's sequence state (nextval and setval change it)",
    "pg_reload_conf": "reloads the server configuration",
    "pg_rotate_logfile": "rotates the server log",
    "pg_switch_wal": "switches the WAL file",
    "pg_promote": "promotes a standby",
    "pg_create_restore_point": "writes a WAL record",
    "pg_logical_emit_message": "writes a WAL record",
    "pg_notify": "sends a notification",
    "pg_file_write": "writes a server file",
    "pg_read_file": "reads a file of the server (it may hold secrets; not a diagnosis query)",
    "pg_read_binary_file": "reads a file of the server (not a diagnosis query)",
    "pg_ls_dir": "lists a folder of the server (not a diagnosis query)",
    "pg_stat_file": "reads a file's status on the server (not a diagnosis query)",
    "pg_sleep": "waits, holding a connection",
    "txid_current": "assigns a transaction id",
    "pg_current_xact_id": "assigns a transaction id",
    "query_to_xml": _SQL_TEXT,
    "query_to_xmlschema": _SQL_TEXT,
    "query_to_xml_and_xmlschema": _SQL_TEXT,
    "cursor_to_xml": "reads a cursor, which may run any statement",
    "ts_stat": _SQL_TEXT,
    "ts_rewrite": _SQL_TEXT,
}
#: Why functions whose names start so are not allowed.
PREFIX_REASONS = {
    "lo_": "uses large objects (lo_import and lo_export reach the server's files)",
    "dblink": "runs statements on another connection (dblink)",
    "pg_advisory": _LOCK,
    "pg_try_advisory": _LOCK,
    "pg_create_": "creates a replication slot",
    "pg_drop_replication": "drops a replication slot",
    "pg_replication_": "changes replication slots or origins",
    "pg_stat_reset": "resets statistics",
    "pg_stat_statements_reset": "resets statistics",
    "pg_wal_replay": "pauses or resumes WAL replay",
    "pg_backup": "starts or stops a backup",
    "pg_start_backup": "starts a backup",
    "pg_stop_backup": "stops a backup",
    "pg_prewarm": "loads relations into the buffer cache",
    "table_to_xml": "reads whole tables (not a diagnosis query)",
    "schema_to_xml": "reads whole schemas (not a diagnosis query)",
    "database_to_xml": "reads the whole database (not a diagnosis query)",
}
