-- AlterTable
ALTER TABLE "RepositoryProject" ADD COLUMN     "latestCommit" JSONB;
