-- AlterTable
ALTER TABLE "FetchRequest" ADD COLUMN     "retry" JSONB;
