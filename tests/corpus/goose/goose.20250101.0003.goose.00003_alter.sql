-- +goose Up
-- +goose StatementBegin
ALTER TABLE repos 
    ADD COLUMN IF NOT EXISTS homepage_url text,
    ADD COLUMN is_private boolean NOT NULL DEFAULT false;
-- +goose StatementEnd

